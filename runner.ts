/**
 * `runner`: joins a vico manager and runs the jobs it hands out.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { VicoError } from "./protocol/errors.ts";
import { DEFAULT_PORT } from "./manager/manager.ts";
import { Runner } from "./runner/runner.ts";
import { complain, ExitCode, intFlag, parseHostPort } from "./util/cli.ts";
import { logger, setupLogging } from "./util/log.ts";
import { parseDuration } from "./util/duration.ts";
import { parseSize } from "./util/size.ts";

const USAGE = `Usage: runner --manager HOST[:PORT] [options]

Joins a vico manager and runs the jobs it hands out, each in its own process
group, sending back the exit status and the output (stdout and stderr merged).

With the text protocol (the default) jobs are shell command lines, run as
'/bin/sh -c <job>', N at a time over one connection. With --protocol binary
the runner is a node: N sessions, each staging one task's files into a fresh
directory, running its programs, returning the files asked for, and joining
again for the next task.

  -m, --manager HOST[:PORT]  The manager (port ${DEFAULT_PORT} if omitted).
  -w, --workers N            Jobs to run at once. Default: 1.
  -n, --name NAME            Name announced to the manager. Default: this
                             machine's host name.
      --max-output SIZE      Largest output a job may write (e.g. 500M, 16G).
                             A job that writes more is killed and reported with
                             status 125 and a note. Default: 16G.
      --persist              Run as a service: keep running when the manager
                             goes away or has no jobs (reconnecting with
                             backoff); running jobs carry on, and results that
                             finish meanwhile are kept on disk and delivered
                             when a manager is back.
      --state-dir DIR        Where --persist keeps the runner's id and its
                             undelivered results. Default:
                             $XDG_STATE_HOME/vico/runner or ~/.local/state/vico/runner.
      --retry-max DURATION   With --persist, the longest wait between attempts
                             to reach the manager (backoff doubles from 0.5s,
                             with jitter), and the wait before asking again
                             after the manager had no more jobs. Default: 30s.
      --plain                Do not offer the vico extension (identity, pulses,
                             timeouts); speak only the draft's protocol.
  -P, --protocol text|binary Protocol to speak. Default: text.
      --modules A,B,...      Binary: modules this node offers; it is given
                             only tasks whose modules it has.
      --work-dir DIR         Binary: where task directories are made.
                             Default: a fresh temporary directory.
      --keep-task-dirs       Binary: keep each task's directory (debugging).
  -q, --quiet                Log only warnings and errors.
  -v, --verbose              Log debugging detail (every job).
  -h, --help                 Show this help.

Signals: the first SIGINT or SIGTERM stops taking jobs and lets running ones
finish and be reported; a second one kills them.

Exit status:
  0  the manager had no more jobs (clean FINO), or stopped by a signal after
     its running jobs were reported
  1  the connection was lost, or the manager dropped this runner, or broke
     the protocol; running jobs were killed
  2  usage error
  3  the manager refused this runner before it ran anything (a protocol
     version it does not speak, or no remaining task fits this node's
     modules; a node that has done work and is then refused exits 0)
  130/143  a second SIGINT/SIGTERM killed running jobs
`;

/** Runs the runner command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let flags;
  try {
    flags = parseArgs({
      args,
      options: {
        manager: { type: "string", short: "m" },
        workers: { type: "string", short: "w" },
        name: { type: "string", short: "n" },
        "max-output": { type: "string" },
        protocol: { type: "string", short: "P" },
        modules: { type: "string" },
        "work-dir": { type: "string" },
        "keep-task-dirs": { type: "boolean" },
        persist: { type: "boolean" },
        "retry-max": { type: "string" },
        "state-dir": { type: "string" },
        plain: { type: "boolean" },
        quiet: { type: "boolean", short: "q" },
        verbose: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return complain("runner", `${(err as Error).message}\n\n${USAGE}`, ExitCode.USAGE);
  }
  if (flags.help) {
    console.log(USAGE);
    return ExitCode.OK;
  }
  let address, workers, maxOutput, protocol: "text" | "binary", modules: string[] | undefined;
  try {
    if (flags.manager === undefined) throw new VicoError("USAGE", "--manager HOST[:PORT] is required");
    address = parseHostPort(flags.manager, DEFAULT_PORT);
    workers = intFlag("workers", flags.workers, 1, 1);
    maxOutput = flags["max-output"] === undefined ? undefined : parseSize(flags["max-output"]);
    protocol = (flags.protocol ?? "text") as "text" | "binary";
    if (protocol !== "text" && protocol !== "binary") {
      throw new VicoError("USAGE", `--protocol must be text or binary, got ${JSON.stringify(flags.protocol)}`);
    }
    modules = flags.modules?.split(",").map((m) => m.trim()).filter((m) => m.length > 0);
    if (protocol === "text" && (modules !== undefined || flags["work-dir"] || flags["keep-task-dirs"])) {
      throw new VicoError("USAGE", "--modules, --work-dir and --keep-task-dirs need --protocol binary");
    }
    for (const m of modules ?? []) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._+\-]*$/.test(m)) {
        throw new VicoError("USAGE", `Bad module name ${JSON.stringify(m)}`);
      }
    }
    if (flags.name !== undefined && (flags.name === "" || /[\r\n]/.test(flags.name))) {
      throw new VicoError("USAGE", "--name must be non-empty and on one line");
    }
  } catch (err) {
    return complain("runner", `${(err as Error).message}\n\n${USAGE}`, ExitCode.USAGE);
  }
  await setupLogging({ level: flags.quiet ? "warning" : flags.verbose ? "debug" : "info" });
  const log = logger("runner");

  const runner = new Runner({
    ...address,
    workers,
    name: flags.name,
    limits: maxOutput === undefined ? undefined : { maxOutputBytes: maxOutput },
    protocol,
    modules,
    workDir: flags["work-dir"],
    keepTaskDirs: flags["keep-task-dirs"],
    persist: flags.persist,
    backoff: flags["retry-max"] === undefined
      ? undefined
      : { initialMs: 500, maxMs: Math.max(500, parseDuration(flags["retry-max"])) },
    stateDir: flags["state-dir"],
    extension: !flags.plain,
  });
  // First SIGINT/SIGTERM: MASTERSTOP (finish and report running jobs, take
  // no new ones). A second one kills the running jobs.
  let killedBy: Deno.Signal | undefined;
  let signals = 0;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const handler = () => {
      if (++signals === 1) {
        log.warn("{sig}: taking no new jobs; running jobs finish and are reported (send it again to kill them)", {
          sig,
        });
        runner.stop();
      } else {
        log.warn("{sig} again: killing running jobs", { sig });
        killedBy = sig;
        runner.abort(`stopped by ${sig}`);
      }
    };
    Deno.addSignalListener(sig, handler);
    return [sig, handler] as const;
  });
  const end = await runner.run();
  for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
  if (killedBy !== undefined) return 128 + (killedBy === "SIGINT" ? 2 : 15);
  switch (end.kind) {
    case "finished":
      log.info("Manager has no more jobs; ran {jobs} job(s)", { jobs: end.jobs });
      return ExitCode.OK;
    case "stopped":
      log.info("Stopped; ran {jobs} job(s)", { jobs: end.jobs });
      return ExitCode.OK;
    case "refused":
      log.error("{reason}", { reason: end.reason });
      return ExitCode.CANNOT_START;
    case "failed":
      log.error("{reason} (ran {jobs} job(s))", { reason: end.reason, jobs: end.jobs });
      return ExitCode.FAILED;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
