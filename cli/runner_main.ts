/**
 * `runner`'s main: wires the command line's parts (flags, security, the job
 * user, cgroups, systemd notification, signals) around a {@linkcode Runner}.
 *
 * @module
 */

import { ensureOpenFiles, openFilesShortage } from "../io/open_file_limit.ts";
import { VicoError } from "../core/errors.ts";
import { JobCgroups } from "../runner/exec/job_cgroup.ts";
import type { RunAs } from "../runner/exec/run_as.ts";
import { Runner, type RunnerEnd } from "../runner/runner.ts";
import { runnerStatus, ServiceNotifier } from "../runner/service/sd_notify.ts";
import { tlsConnector } from "../transport/tls.ts";
import { logger, loggingFromFlags, setupLogging } from "../util/log.ts";
import { parseDuration } from "../core/duration.ts";
import { ExitCode, signalExitCode } from "./exit_code.ts";
import { complain, helpPointer, isLoopback, oneLine, parseFlags } from "./flags.ts";
import { RUNNER_FLAGS, RUNNER_USAGE, type RunnerFlags, type RunnerSettings, runnerSettings } from "./runner_flags.ts";
import { jobUser, type RunnerSecurity, runnerSecurity } from "./runner_security.ts";
import { onStopSignals, type StopSignal } from "./signals.ts";
import { versionText } from "./version.ts";

/** Runs the runner command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let flags: RunnerFlags;
  try {
    // -w N is the older spelling of -j N.
    flags = parseFlags(
      args.map((a) => a.startsWith("-w") && !a.startsWith("--") ? "-j" + a.slice(2) : a),
      RUNNER_FLAGS,
    );
  } catch (err) {
    return complain("runner", `${oneLine(err)}\n${helpPointer("runner")}`, ExitCode.USAGE);
  }
  if (flags.help) {
    console.log(RUNNER_USAGE);
    return ExitCode.OK;
  }
  if (flags.version) {
    console.log(versionText("runner"));
    return ExitCode.OK;
  }
  let settings: RunnerSettings, security: RunnerSecurity;
  try {
    security = await runnerSecurity(flags);
    settings = runnerSettings(flags, security);
  } catch (err) {
    const usage = err instanceof VicoError && err.code === "USAGE" ? `\n${helpPointer("runner")}` : "";
    return complain("runner", `${(err as Error).message}${usage}`, ExitCode.USAGE);
  }
  const { address } = settings;
  // Room for the descriptors its jobs hold: a low limit failed jobs halfway through the run.
  const room = ensureOpenFiles(settings.workers);
  if (!room.enough) return complain("runner", openFilesShortage(room, `-j ${settings.workers}`), ExitCode.USAGE);
  try {
    await setupLogging(loggingFromFlags(flags));
  } catch (err) {
    return complain("runner", (err as Error).message, ExitCode.USAGE);
  }
  const log = logger("runner");
  if (security.trust === undefined && !isLoopback(address.hostname)) {
    log.warn(
      security.secret === undefined
        ? "--insecure: jobs, outputs and files cross the network in plain text, and nothing proves who the manager is"
        : "No TLS: the secret proves who the manager is, but jobs and outputs cross the network in plain text " +
          "and an attacker on the path could alter them (add --tls-ca, or use a join token)",
    );
  }
  let runAs: RunAs | undefined;
  let jobCgroups: JobCgroups | undefined;
  try {
    runAs = await jobUser(flags.user, flags["allow-root"] ?? false);
    // --job-memory/--job-cpus: refuse to start where they cannot be enforced.
    if (settings.jobLimits !== undefined) {
      jobCgroups = await JobCgroups.setUp(settings.jobLimits, { runAs: runAs !== undefined });
    }
  } catch (err) {
    return complain("runner", (err as Error).message, ExitCode.USAGE);
  }

  // Under systemd (Type=notify): READY=1 once joined, STATUS=, WATCHDOG=1, STOPPING=1.
  const notifier = await ServiceNotifier.fromEnv();
  const managerAddress = `${address.hostname}:${address.port}`;
  const runner = new Runner({
    ...address,
    workers: settings.workers,
    ...(flags.shell === undefined ? {} : { shell: flags.shell }),
    name: flags.name,
    limits: {
      ...(settings.maxOutput === undefined ? {} : { maxOutputBytes: settings.maxOutput }),
      ...(settings.maxFile === undefined ? {} : { maxFileBytes: settings.maxFile }),
    },
    protocol: settings.protocol,
    modules: settings.modules,
    workDir: flags["work-dir"],
    keepTaskDirs: flags["keep-task-dirs"],
    persist: flags.persist,
    backoff: flags["retry-max"] === undefined
      ? undefined
      : { initialMs: 500, maxMs: Math.max(500, parseDuration(flags["retry-max"])) },
    stateDir: flags["state-dir"],
    extension: !flags.plain,
    secret: security.secret,
    connect: security.trust === undefined ? undefined : tlsConnector(security.trust),
    runAs,
    jobCgroups,
    onConnection: notifier &&
      ((a) =>
        a.connected
          ? notifier.ready(runnerStatus(a, managerAddress))
          : notifier.status(runnerStatus(a, managerAddress))),
  });
  const statusTimer = notifier &&
    setInterval(() => notifier.status(runnerStatus(runner.activity, managerAddress)), 1000);
  if (statusTimer !== undefined) Deno.unrefTimer(statusTimer);
  // First SIGINT/SIGTERM: MASTERSTOP (finish and report running jobs, take
  // no new ones). A second one kills the running jobs.
  let killedBy: StopSignal | undefined;
  const removeSignals = onStopSignals((sig, count) => {
    if (count === 1 && runner.activity.running === 0) {
      log.warn("{sig}: no job is running; stopping", { sig });
      runner.stop();
      notifier?.stopping();
    } else if (count === 1) {
      log.warn("{sig}: taking no new jobs; running jobs finish and are reported (send it again to kill them)", {
        sig,
      });
      runner.stop();
      notifier?.stopping();
    } else {
      log.warn("{sig} again: killing running jobs", { sig });
      killedBy = sig;
      runner.abort(`stopped by ${sig}`);
    }
  });
  const end = await runner.run();
  await jobCgroups?.close();
  clearInterval(statusTimer);
  await notifier?.close();
  removeSignals();
  if (killedBy !== undefined) return signalExitCode(killedBy);
  return endExitCode(end, log);
}

/** Logs how the runner ended and gives the command's exit code for it. */
function endExitCode(end: RunnerEnd, log: ReturnType<typeof logger>): number {
  switch (end.kind) {
    case "finished":
      log.info("Manager has no more jobs; ran {jobs} job(s)", { jobs: end.jobs });
      return ExitCode.OK;
    case "stopped":
      log.info("Stopped; ran {jobs} job(s)", { jobs: end.jobs });
      return ExitCode.OK;
    case "refused":
      log.error("{reason}", { reason: end.reason });
      return end.auth ? ExitCode.UNTRUSTED : ExitCode.CANNOT_START;
    case "untrusted":
      log.error("{reason}", { reason: end.reason });
      return ExitCode.UNTRUSTED;
    case "cannot-start":
      log.error("{reason}", { reason: end.reason });
      return ExitCode.CANNOT_START;
    case "failed":
      log.error("{reason} (ran {jobs} job(s))", { reason: end.reason, jobs: end.jobs });
      return ExitCode.FAILED;
  }
}
