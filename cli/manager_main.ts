/**
 * `manager`'s main: wires the command line's parts (flags, security,
 * status page, progress, signals) around a {@linkcode Manager}.
 *
 * @module
 */

import { JobListError } from "../core/errors.ts";
import { readJobList } from "../manager/jobs/job_list.ts";
import { Manager } from "../manager/manager.ts";
import { formatSummary, ProgressBar, ProgressLog } from "../manager/observe/progress.ts";
import type { StatusServer } from "../manager/observe/status_server.ts";
import { logger, loggingFromFlags, setupLogging } from "../util/log.ts";
import { CommandFailure, ExitCode, signalExitCode } from "./exit_code.ts";
import { complain, parseFlags } from "./flags.ts";
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
  let flags: ManagerFlags;
  try {
    flags = parseFlags(args, MANAGER_FLAGS);
  } catch (err) {
    return complain("manager", `${(err as Error).message}\n\n${MANAGER_USAGE}`, ExitCode.USAGE);
  }
  if (flags.help) {
    console.log(MANAGER_USAGE);
    return ExitCode.OK;
  }
  if (flags.version) {
    console.log(versionText("manager"));
    return ExitCode.OK;
  }
  try {
    await setupLogging(loggingFromFlags(flags));
  } catch (err) {
    return complain("manager", (err as Error).message, ExitCode.USAGE);
  }
  try {
    return await serve(flags);
  } catch (err) {
    if (err instanceof CommandFailure) return complain("manager", err.message, err.exitCode);
    throw err;
  }
}

async function serve(flags: ManagerFlags): Promise<number> {
  const log = logger("manager");
  let settings;
  try {
    settings = managerSettings(flags);
  } catch (err) {
    throw new CommandFailure(ExitCode.USAGE, `${(err as Error).message}\n\n${MANAGER_USAGE}`);
  }
  if (flags.format !== undefined && flags.format !== "text" && flags.format !== "jsonl") {
    throw new CommandFailure(ExitCode.USAGE, `--format must be text or jsonl, got ${JSON.stringify(flags.format)}`);
  }
  let jobs;
  try {
    jobs = await readJobList(settings.jobs, { format: flags.format });
  } catch (err) {
    if (err instanceof JobListError) throw new CommandFailure(ExitCode.USAGE, `${settings.jobs}: ${err.message}`);
    throw new CommandFailure(ExitCode.USAGE, `cannot read job list ${settings.jobs}: ${(err as Error).message}`);
  }
  const resultsDir = flags.results ?? defaultResultsDir(settings.jobs);
  const hostname = flags.host ?? "127.0.0.1";
  const { tls, secret, enrollment } = await managerSecurity(flags, hostname, log);

  let manager!: Manager;
  const statusServer: StatusServer | undefined = settings.statusPort === undefined
    ? undefined
    : serveStatus({ hostname: flags["status-host"] ?? "127.0.0.1", port: settings.statusPort, resultsDir }, () =>
      manager, log);
  const { jobs: _, statusPort: __, ...options } = settings;
  try {
    manager = await Manager.start({
      ...options,
      jobs,
      resultsDir,
      fresh: flags.fresh,
      hostname,
      localWorkers: localRunners,
      tls,
      secret,
    });
  } catch (err) {
    await statusServer?.close();
    if (err instanceof Deno.errors.AddrInUse) {
      const message = `port ${settings.port} is already in use; choose another with --port`;
      throw new CommandFailure(ExitCode.CANNOT_START, message);
    }
    throw new CommandFailure(ExitCode.CANNOT_START, `cannot start: ${(err as Error).message}`);
  }
  const { port: bound } = manager.address;
  log.info("Serving {count} job(s) from {source} on {hostname}:{port} ({security}); results in {dir}", {
    count: jobs.commands.length,
    source: jobs.source,
    hostname: manager.address.hostname,
    security: [tls !== undefined ? "TLS" : "plain", secret !== undefined ? "secret" : "no secret"].join(", "),
    port: bound,
    dir: resultsDir,
  });
  if (enrollment !== undefined) {
    try {
      await announceJoinToken(enrollment, advertiseAddress(flags.advertise, hostname, bound), log);
    } catch (err) {
      manager.close();
      await manager.finished.catch(() => {});
      await statusServer?.close();
      throw err;
    }
  } else if (settings.local === 0) {
    log.info("Start runners with: runner --manager {host}:{port} --workers N", { host: hostname, port: bound });
  }

  // Progress from the live counts: a bar on a terminal, else a log line now and then.
  const counts = () => manager.status.counts();
  const showProgress = !flags["no-progress"] && !flags.quiet;
  const progress = showProgress && Deno.stderr.isTerminal() ? new ProgressBar(counts) : undefined;
  const progressLog = showProgress && progress === undefined ? new ProgressLog(counts) : undefined;

  // First SIGINT/SIGTERM: no new jobs, wait for running ones; second: now.
  // Unsettled jobs run on the next start on the same results directory.
  let stoppedBy: StopSignal | undefined;
  const removeSignals = onStopSignals((sig, count) => {
    if (count === 1) {
      stoppedBy = sig;
      log.warn("{sig}: stopping (send it again to stop at once); unsettled jobs will run when started again on {dir}", {
        sig,
        dir: resultsDir,
      });
      manager.stop();
    } else {
      log.warn("{sig} again: stopping now", { sig });
      manager.close();
    }
  });
  const summary = await manager.finished;
  removeSignals();
  progress?.stop();
  progressLog?.stop();
  await statusServer?.finish();
  await statusServer?.close();
  console.log(formatSummary(summary).trimEnd());
  if (summary.stopped) return signalExitCode(stoppedBy ?? "SIGTERM");
  return summary.failed === 0 ? ExitCode.OK : ExitCode.FAILED;
}
