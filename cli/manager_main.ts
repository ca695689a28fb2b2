/**
 * `manager`'s main: wires the command line's parts (flags, security,
 * status page, progress, signals) around a {@linkcode Manager}.
 *
 * @module
 */

import { fstatSync } from "node:fs";
import { join } from "node:path";
import { JobListError, VicoError } from "../core/errors.ts";
import { ensureOpenFiles, openFilesShortage } from "../io/open_file_limit.ts";
import { writeAll } from "../io/write_all.ts";
import { type JobList, readJobList } from "../manager/jobs/job_list.ts";
import { Manager } from "../manager/manager.ts";
import { type JobRecord, JOURNAL_FILE } from "../manager/results/results_store.ts";
import { formatSummary, ProgressBar, ProgressLog } from "../manager/observe/progress.ts";
import type { StatusServer } from "../manager/observe/status_server.ts";
import { logger, loggingFromFlags, setupLogging } from "../util/log.ts";
import { CommandFailure, ExitCode, signalExitCode } from "./exit_code.ts";
import { complain, helpPointer, oneLine, parseFlags, splitAtCommand } from "./flags.ts";
import { ADHOC_PARENT, latestAdhocRunName, makeAdhocRunDir } from "./adhoc_results.ts";
import { checkShell, checkShellHere, type TemplateJob } from "./command_template.ts";
import { type HaltDecision, HaltWatch, parseHalt } from "./halt_policy.ts";
import { JoblogWriter, LOCAL_HOST } from "./joblog.ts";
import { OutputGrouper, parallelTag } from "./output_grouper.ts";
import { loadTemplateRun, templateJobList } from "./template_job_list.ts";
import { localRunners } from "./local_runners.ts";
import {
  advertiseAddress,
  defaultResultsDir,
  MANAGER_FLAGS,
  MANAGER_USAGE,
  type ManagerFlags,
  managerSettings,
} from "./manager_flags.ts";
import { announceJoinToken, managerSecurity } from "./manager_security.ts";
import { reportMain } from "./report_main.ts";
import { serveStatus } from "./serve_status.ts";
import { onStopSignals, type StopSignal } from "./signals.ts";
import { verifyMain } from "./verify_main.ts";
import { versionText } from "./version.ts";

/** Runs the manager command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args[0] === "verify") return await verifyMain(args.slice(1));
  if (args[0] === "report") return await reportMain(args.slice(1));
  // Deno decodes the command line lossily: a word that was not UTF-8 (a Latin-1 file name) arrives with U+FFFD in it.
  const garbled = args.findIndex((word) => word.includes("\uFFFD"));
  if (garbled !== -1) {
    return complain(
      "manager",
      usageError(
        `argument ${garbled + 1} (${JSON.stringify(args[garbled])}) is not valid UTF-8: a job is UTF-8 text, ` +
          `so it cannot reach one intact (rename such files, e.g. with convmv)`,
      ),
      ExitCode.USAGE,
    );
  }
  // Options end at the first word that is not one: the rest is a command template.
  const split = splitAtCommand(bareLocal(args, navigator.hardwareConcurrency), MANAGER_FLAGS);
  let resumeDir: string | undefined;
  // --resume[=DIR] and --resume-failed[=DIR]: a switch with an optional directory.
  const optionArgs = split.options.map((word) => {
    for (const flag of ["--resume", "--resume-failed"]) {
      if (!word.startsWith(`${flag}=`)) continue;
      resumeDir = word.slice(flag.length + 1);
      return flag;
    }
    return word;
  });
  // GNU Parallel's and xargs's -r takes no value: read as a results directory it would take the command's first word.
  if (optionArgs.some((word) => /^-[a-zA-Z]*r/.test(word) && !word.startsWith("--"))) {
    return complain(
      "manager",
      usageError(
        "-r is not a vico option: GNU Parallel's -r (--no-run-if-empty) is what vico always does " +
          "(no input, no job); a results directory is --results DIR",
      ),
      ExitCode.USAGE,
    );
  }
  let flags: ManagerFlags;
  try {
    flags = parseFlags(optionArgs, MANAGER_FLAGS);
  } catch (err) {
    return complain("manager", usageError(oneLine(err)), ExitCode.USAGE);
  }
  if (flags.help) {
    console.log(MANAGER_USAGE);
    return ExitCode.OK;
  }
  if (flags.version) {
    console.log(versionText("manager"));
    return ExitCode.OK;
  }
  // A local template run is as quiet as Parallel: warnings and errors only, unless asked.
  const localTemplate = (split.command.length > 0 || (flags.jobs === undefined && stdinHasData())) &&
    flags.host === undefined && flags.port === undefined;
  const quietly = localTemplate && !flags.verbose && flags["log-level"] === undefined;
  try {
    await setupLogging(loggingFromFlags(quietly ? { ...flags, "log-level": "warning" } : flags));
  } catch (err) {
    return complain("manager", (err as Error).message, ExitCode.USAGE);
  }
  try {
    return await serve(flags, split.command, resumeDir);
  } catch (err) {
    if (err instanceof CommandFailure) return complain("manager", err.message, err.exitCode);
    throw err;
  }
}

/**
 * `--local` (or `-l`) with no number, as the last word or before another
 * option, means one worker per core: written `--local=N` for the parser.
 * A negative number (`--local -1`) is left for the parser to refuse.
 *
 * @example
 * ```ts
 * import { bareLocal } from "./manager_main.ts";
 * console.assert(bareLocal(["--local", "--jobs", "x"], 8).join(" ") === "--local=8 --jobs x");
 * console.assert(bareLocal(["--local", "3"], 8).join(" ") === "--local 3");
 * console.assert(bareLocal(["echo", "-l"], 8).join(" ") === "echo -l", "a template's words are its own");
 * ```
 */
export function bareLocal(args: readonly string[], cores: number): string[] {
  const out = [...args];
  const takesValue = new Set<string>();
  for (const [flag, spec] of Object.entries(MANAGER_FLAGS)) {
    if (spec.type !== "string") continue;
    takesValue.add(`--${flag}`);
    if ("short" in spec) takesValue.add(`-${spec.short}`);
  }
  // Only among the options: they end where splitAtCommand ends them.
  for (let i = 0; i < out.length; i++) {
    const word = out[i];
    if (word === "--" || !word.startsWith("-") || word === "-") break;
    const next = out[i + 1];
    if ((word === "--local" || word === "-l") && (next === undefined || /^-[^0-9]/.test(next))) {
      out[i] = `--local=${Math.max(1, cores)}`;
    } else if (takesValue.has(word)) i++; // its value
  }
  return out;
}

/** A usage error: its one-line reason and where the whole story is (not the whole help). */
function usageError(message: string): string {
  return `${message}\n${helpPointer("manager")}`;
}

/** Names of standard input a job list may be given as (`--jobs /dev/stdin`): read as `-`. */
const STDIN_PATHS = new Set(["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"]);

/** Whether standard input carries data (a pipe or a file), not a terminal or nothing. */
function stdinHasData(): boolean {
  try {
    if (Deno.stdin.isTerminal()) return false;
    // fstat of fd 0 (Deno.statSync("/dev/stdin") would need --allow-all).
    const info = fstatSync(0);
    return info.isFile() || info.isFIFO() || info.isSocket();
  } catch {
    return false;
  }
}

/** The job list of the run: a template's (ad hoc) or a job file's. */
async function loadJobs(
  flags: ManagerFlags,
  command: readonly string[],
  adhoc: boolean,
  jobsPath: string | undefined,
): Promise<{ jobs: JobList; template?: readonly TemplateJob[]; refused: number }> {
  if (!adhoc) {
    try {
      const jobs = await readJobList(jobsPath!, { format: flags.format as "text" | "jsonl" | undefined });
      for (const r of jobs.refused ?? []) {
        console.error(`manager: ${jobsPath} line ${r.line} refused, not run: ${r.reason}`);
      }
      return { jobs, refused: jobs.refused?.length ?? 0 };
    } catch (err) {
      if (err instanceof JobListError) throw new CommandFailure(ExitCode.USAGE, `${jobsPath}: ${err.message}`);
      throw new CommandFailure(ExitCode.USAGE, `cannot read job list ${jobsPath}: ${(err as Error).message}`);
    }
  }
  try {
    const loaded = await loadTemplateRun(command, {
      stdin: Deno.stdin.readable,
      openFile: (path) => Deno.openSync(path).readable,
    });
    for (const r of loaded.refused) {
      console.error(`manager: argument source ${r.source} line ${r.line} refused, not run: ${r.reason}`);
    }
    const made = templateJobList(loaded.run, { source: command.length > 0 ? "template" : "stdin" }, loaded.specs);
    for (const r of made.refused) console.error(`manager: job ${r.seq} (${r.origin}) refused, not run: ${r.reason}`);
    return { jobs: made.list, template: made.jobs, refused: loaded.refused.length + made.refused.length };
  } catch (err) {
    if (err instanceof VicoError) throw new CommandFailure(ExitCode.USAGE, usageError(err.message));
    throw new CommandFailure(ExitCode.USAGE, usageError(`cannot read the arguments: ${(err as Error).message}`));
  }
}

/** The results directory of an ad-hoc run: a new one under `vico-results/`, or the latest with `--resume`. */
async function adhocResultsDir(resume: boolean): Promise<string> {
  try {
    if (Deno.statSync(join(ADHOC_PARENT, ".vico-results")).isFile) {
      throw new CommandFailure(
        ExitCode.CANNOT_START,
        `${ADHOC_PARENT} is the results directory of an earlier standard-input run; ad-hoc runs now keep one ` +
          `directory each under it: move it aside, or name a directory with --results`,
      );
    }
  } catch (err) {
    if (err instanceof CommandFailure) throw err;
  }
  if (!resume) {
    try {
      return await makeAdhocRunDir();
    } catch (err) {
      // The current directory is not writable, holds a file by that name, or is refused (/proc): one line, exit 3.
      throw new CommandFailure(
        ExitCode.CANNOT_START,
        `cannot make a results directory in ${ADHOC_PARENT}/ here (${oneLine(err)}); ` +
          `give one with --results DIR, or run from a directory you can write`,
      );
    }
  }
  const names: string[] = [];
  try {
    for (const entry of Deno.readDirSync(ADHOC_PARENT)) names.push(entry.name);
  } catch { /* no parent: no earlier run */ }
  const latest = latestAdhocRunName(names);
  if (latest === undefined) {
    throw new CommandFailure(ExitCode.USAGE, usageError(`--resume: no earlier run in ${ADHOC_PARENT}/`));
  }
  return join(ADHOC_PARENT, latest);
}

/**
 * The exit status of a run `--halt` stopped: Parallel's, except that vico's
 * own meanings (2 usage, 3 could not start, 4 untrusted, 128 and over:
 * signals) are never reused: those become 1.
 */
export function haltExitStatus(parallels: number): number {
  if (parallels === 0) return 0;
  return parallels === 1 || (parallels >= 5 && parallels < 128) ? parallels : ExitCode.FAILED;
}

async function serve(given: ManagerFlags, command: readonly string[], resumeDir?: string): Promise<number> {
  const log = logger("manager");
  // Standard input by another name is standard input; Deno's permissions refuse other /dev and /proc paths.
  const flags = STDIN_PATHS.has(given.jobs ?? "") ? { ...given, jobs: "-" } : given;
  if (flags.jobs !== undefined && /^\/(dev|proc)\//.test(flags.jobs)) {
    throw new CommandFailure(
      ExitCode.USAGE,
      usageError(
        `--jobs ${flags.jobs}: Deno's permissions refuse paths under /dev and /proc; give the list on standard input ` +
          `(--jobs - < <(command)) or in a file`,
      ),
    );
  }
  // An ad-hoc run: a template, or commands on standard input with neither a template nor --jobs.
  const templateRun = command.length > 0 || (flags.jobs === undefined && stdinHasData());
  const adhoc = templateRun || flags.jobs === "-";
  let settings;
  try {
    settings = managerSettings(flags, { adhoc: templateRun, cores: navigator.hardwareConcurrency });
    if (flags.format !== undefined && flags.format !== "text" && flags.format !== "jsonl") {
      throw new VicoError("USAGE", `--format must be text or jsonl, got ${JSON.stringify(flags.format)}`);
    }
    if (flags.shell !== undefined) {
      checkShell(flags.shell);
      checkShellHere(flags.shell);
      if (flags.host !== undefined || flags.port !== undefined || settings.local === 0) {
        throw new VicoError(
          "USAGE",
          "--shell sets the shell of this machine's workers (a local run); remote runners take runner --shell PATH",
        );
      }
    }
    if (flags.halt !== undefined) parseHalt(flags.halt);
    if (flags["resume-failed"] && flags.fresh) {
      throw new VicoError(
        "USAGE",
        "--resume-failed re-runs the failed jobs of earlier results; --fresh moves them aside",
      );
    }
  } catch (err) {
    throw new CommandFailure(ExitCode.USAGE, usageError((err as Error).message));
  }
  const { jobs, template, refused } = await loadJobs(flags, command, templateRun, settings.jobs);
  // Lines refused one by one (not UTF-8, too long): the rest runs, and the run ends non-zero.
  const sayRefused = () => {
    if (refused > 0) console.error(`manager: ${refused} line(s) refused and not run (named above)`);
  };
  if (flags["dry-run"]) {
    const text = jobs.commands.map((c) => c + "\n").join("");
    try {
      await writeAll(Deno.stdout, new TextEncoder().encode(text));
    } catch (err) {
      // A reader that went away (`| head`) ends it as SIGPIPE would; any other failure is said.
      if (err instanceof Deno.errors.BrokenPipe) return signalExitCode("SIGPIPE");
      throw new CommandFailure(ExitCode.FAILED, `cannot print the commands on stdout: ${oneLine(err)}`);
    }
    sayRefused();
    return refused > 0 ? ExitCode.FAILED : ExitCode.OK;
  }
  // Room for the descriptors its local jobs hold: a low limit failed jobs halfway through the run.
  if (settings.local > 0) {
    const room = ensureOpenFiles(settings.local);
    if (!room.enough) throw new CommandFailure(ExitCode.CANNOT_START, openFilesShortage(room, `-j ${settings.local}`));
  }
  if (flags.results === "") throw new CommandFailure(ExitCode.USAGE, usageError("--results needs a directory"));
  const rerunFailed = flags["resume-failed"] ?? false;
  const resultsDir = flags.results ?? resumeDir ??
    (adhoc ? await adhocResultsDir((flags.resume ?? false) || rerunFailed) : defaultResultsDir(settings.jobs!));
  // A job file's default directory (named after it) is its own: another list of the same name is refused it.
  const defaultResults = flags.results === undefined && resumeDir === undefined && !adhoc;
  // How a stopped ad-hoc run is finished (its directory named: a later ad-hoc run would be the latest).
  const resumeHint = flags.results === undefined ? `--resume=${resultsDir}` : `--results ${resultsDir}`;
  if (rerunFailed && !hasJournal(resultsDir)) {
    throw new CommandFailure(ExitCode.USAGE, usageError(`--resume-failed: no results journal in ${resultsDir}`));
  }
  const hostname = flags.host ?? "127.0.0.1";
  const { tls, secret, enrollment } = await managerSecurity(flags, hostname, log);

  let manager!: Manager;
  const statusServer: StatusServer | undefined = settings.statusPort === undefined
    ? undefined
    : serveStatus({ hostname: flags["status-host"] ?? "127.0.0.1", port: settings.statusPort, resultsDir }, () =>
      manager, log);
  const { jobs: _, statusPort: __, ...options } = settings;
  const localNames = new Set(Array.from({ length: settings.local }, (_, i) => `local-${i + 1}`));
  // Outputs on stdout, whole, as each job ends (a template run, or --print).
  const outputs = new Map<number, string | null>();
  const grouper = adhoc || flags.print
    ? new OutputGrouper({
      write: (bytes) => writeAll(Deno.stdout, bytes),
      stored: (seq) => storedOutput(resultsDir, outputs.get(seq - 1)),
      keepOrder: flags["keep-order"],
      tag: flags.tag
        ? (seq) => template === undefined ? jobs.commands[seq - 1] : parallelTag(template[jobs.lines[seq - 1] - 1].args)
        : undefined,
    })
    : undefined;
  const printing: Promise<void>[] = [];
  // The first output that could not be printed: a closed pipe (`| head`) stops the run, as SIGPIPE stops
  // Parallel; any other failure (a full disk) is said once, and the run goes on and ends non-zero.
  let printFailure: unknown;
  const printFailed = (job: number, err: unknown) => {
    if (printFailure !== undefined) return;
    printFailure = err;
    if (err instanceof Deno.errors.BrokenPipe) {
      log.debug("stdout was closed (its reader ended): stopping; the outputs are in {dir}", { dir: resultsDir });
      manager.close();
      return;
    }
    log.error(
      "Cannot print the output of job {n} on stdout: {err}; later outputs are not printed either, " +
        "they are in {dir}",
      { n: job + 1, err: oneLine(err), dir: resultsDir },
    );
  };
  const halt = flags.halt === undefined ? undefined : new HaltWatch(parseHalt(flags.halt), jobs.commands.length);
  let halted: HaltDecision | undefined;
  let joblog: { file: Deno.FsFile; writer: JoblogWriter } | undefined;
  if (flags.joblog !== undefined) {
    try {
      const file = await Deno.open(flags.joblog, { write: true, create: true, truncate: true });
      joblog = { file, writer: new JoblogWriter((bytes) => writeAll(file, bytes)) };
    } catch (err) {
      throw new CommandFailure(
        ExitCode.CANNOT_START,
        `cannot write --joblog ${flags.joblog}: ${(err as Error).message}`,
      );
    }
  }
  const onRecorded = (job: number, record: JobRecord) => {
    outputs.set(job, record.output);
    if (grouper !== undefined) {
      printing.push(grouper.finished(job + 1).catch((err) => printFailed(job, err)));
    }
    const status = record.status ?? 255;
    if (joblog !== undefined) {
      const startMs = Date.parse(record.start);
      joblog.writer.entry({
        seq: template === undefined ? job + 1 : jobs.lines[job],
        host: localNames.has(record.host) ? LOCAL_HOST : record.host,
        startMs,
        runtimeMs: Math.max(0, Date.parse(record.end) - startMs),
        sendBytes: 0,
        receiveBytes: record.size,
        exitval: status,
        signal: status > 128 && status <= 128 + 64 ? status - 128 : 0,
        command: record.command,
      }).catch(() => {});
    }
    const decision = halt?.ended({ status });
    if (decision !== undefined) {
      halted = decision;
      console.error(`manager: halting (${decision.action}): ${decision.reason}`);
      // Asked while the manager is still starting: as soon as it is there.
      queueMicrotask(() => decision.action === "now" ? manager.close() : manager.stop());
    }
  };
  // First SIGINT/SIGTERM: no new jobs, wait for running ones; second: now.
  // Unsettled jobs run on the next start on the same results directory.
  // Listened for before the manager starts: its local workers start jobs
  // at once, and a signal then must stop it, not kill it unsummarised.
  let stoppedBy: StopSignal | undefined;
  let signals = 0;
  // The first stop reaches the manager even while it starts (before any job goes out).
  const firstStop = new AbortController();
  const applySignals = () => {
    if (signals > 1) manager.close();
  };
  const removeSignals = onStopSignals((sig, count) => {
    signals = count;
    if (count === 1) {
      firstStop.abort();
      stoppedBy = sig;
      log.warn("{sig}: stopping (send it again to stop at once); unsettled jobs will run when started again {how}", {
        sig,
        how: adhoc ? `with ${resumeHint}` : `on ${resultsDir}`,
      });
    } else {
      log.warn("{sig} again: stopping now", { sig });
    }
    if (manager !== undefined) applySignals(); // else once it has started
  });
  try {
    manager = await Manager.start({
      ...options,
      stopSignal: firstStop.signal,
      jobs,
      resultsDir,
      defaultResults,
      fresh: flags.fresh,
      hostname,
      localWorkers: localRunners,
      tls,
      secret,
      onRecorded,
      // --halt judges each result before the worker that sent it starts another.
      settleBeforeNext: halt !== undefined,
      // -k: what an earlier run settled prints nothing now; later jobs need not wait for it.
      onResumed: (before) => {
        for (const job of before) printing.push(grouper?.skipped(job + 1) ?? Promise.resolve());
      },
      ...(flags.shell === undefined ? {} : { shell: flags.shell }),
      rerunFailed,
      onReopened: (reopened, toRun) => {
        const none = `manager: no failed or lost job recorded in ${resultsDir}`;
        console.error(
          reopened.length > 0
            ? `manager: re-running ${reopened.length} failed or lost job(s) recorded in ${resultsDir} ` +
              `(their earlier attempts are kept)`
            : toRun === 0
            ? `${none}: nothing to re-run`
            : `${none}; resuming the ${toRun} job(s) not settled yet`,
        );
      },
    });
  } catch (err) {
    removeSignals();
    await statusServer?.close();
    if (err instanceof Deno.errors.AddrInUse) {
      const message = `port ${settings.port} is already in use; choose another with --port`;
      throw new CommandFailure(ExitCode.CANNOT_START, message);
    }
    throw new CommandFailure(ExitCode.CANNOT_START, `cannot start: ${(err as Error).message}`);
  }
  applySignals();
  const { port: bound } = manager.address;
  if (settings.serveRunners === false) {
    log.info("Running {count} job(s) from {source} on this machine ({n} worker(s); no port open); results in {dir}", {
      count: jobs.commands.length,
      source: jobs.source,
      n: settings.local,
      dir: resultsDir,
    });
  } else {
    log.info("Serving {count} job(s) from {source} on {hostname}:{port} ({security}); results in {dir}", {
      count: jobs.commands.length,
      source: jobs.source,
      hostname: manager.address.hostname,
      security: [tls !== undefined ? "TLS" : "plain", secret !== undefined ? "secret" : "no secret"].join(", "),
      port: bound,
      dir: resultsDir,
    });
  }
  if (enrollment !== undefined) {
    try {
      await announceJoinToken(enrollment, advertiseAddress(flags.advertise, hostname, bound), log);
    } catch (err) {
      removeSignals();
      manager.close();
      await manager.finished.catch(() => {});
      await statusServer?.close();
      throw err;
    }
  } else if (settings.local === 0) {
    // The address as runner --manager takes it (an IPv6 one bracketed; a wildcard's is this host's name).
    const at = advertiseAddress(flags.advertise, hostname, bound);
    log.info("Start runners with: runner --manager {at} --workers N", { at });
  }

  // Progress from the live counts: a bar on a terminal, else a log line now and then.
  const counts = () => manager.status.counts();
  const showProgress = !flags["no-progress"] && !flags.quiet;
  const progress = showProgress && Deno.stderr.isTerminal() ? new ProgressBar(counts) : undefined;
  const progressLog = showProgress && progress === undefined ? new ProgressLog(counts) : undefined;

  const summary = await manager.finished;
  removeSignals();
  progress?.stop();
  progressLog?.stop();
  await statusServer?.finish();
  await statusServer?.close();
  if (grouper !== undefined) {
    await Promise.all(printing);
    await grouper.end().catch(() => {});
  }
  let joblogFailed = false;
  if (joblog !== undefined) {
    await joblog.writer.flushed().catch((err) => {
      joblogFailed = true;
      log.error("Cannot write the joblog {file}: {err}; the results are complete in {dir}", {
        file: flags.joblog,
        err: oneLine(err),
        dir: resultsDir,
      });
    });
    joblog.file.close();
  }
  // Its reader went away (`| head`): the run was cut short on purpose, and ends as SIGPIPE would end it.
  if (printFailure instanceof Deno.errors.BrokenPipe) return signalExitCode("SIGPIPE");
  // With outputs on stdout, the summary goes to stderr.
  // An ad-hoc run started again makes a new directory: it is finished with --resume.
  const summaryText = formatSummary(summary, adhoc ? `run the same command with ${resumeHint} to finish` : undefined)
    .trimEnd();
  if (grouper !== undefined) console.error(summaryText);
  else console.log(summaryText);
  sayRefused();
  // The results directory could no longer take records (said above): as unusable as at a start.
  if (summary.storeFailure !== undefined) return ExitCode.CANNOT_START;
  if (halted !== undefined) return haltExitStatus(halt!.exitStatus(summary.jobs - summary.unsettled));
  if (summary.stopped) return signalExitCode(stoppedBy ?? "SIGTERM");
  if (printFailure !== undefined || joblogFailed) return ExitCode.FAILED;
  return summary.failed === 0 && refused === 0 ? ExitCode.OK : ExitCode.FAILED;
}

/** Whether `dir` holds a results journal. */
function hasJournal(dir: string): boolean {
  try {
    return Deno.statSync(join(dir, JOURNAL_FILE)).isFile;
  } catch {
    return false;
  }
}

/** A job's stored output, read in chunks; nothing for an empty (or lost) one. */
async function* storedOutput(resultsDir: string, output: string | null | undefined): AsyncIterable<Uint8Array> {
  if (output === null || output === undefined) return;
  using file = await Deno.open(join(resultsDir, output));
  for await (const chunk of file.readable) yield chunk;
}
