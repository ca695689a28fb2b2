/**
 * The `runner` command's flags: one table that drives its parsing, its usage
 * text and its `VICO_*` variables (`--join` has none: `VICO_JOIN` holds the
 * token itself, read apart so that jobs do not inherit it).
 *
 * @module
 */

import { VicoError } from "../core/errors.ts";
import { checkShell, checkShellHere } from "./command_template.ts";
import { parseSize } from "../core/size.ts";
import { DEFAULT_PORT } from "../protocol/messages.ts";
import { type JobLimits, parseJobLimits } from "../runner/exec/job_cgroup.ts";
import { type FlagTable, flagUsage, isLoopback, type parseFlags, parseHostPort } from "./flags.ts";
import type { RunnerSecurity } from "./runner_security.ts";

/** Every flag of `runner`, in the order its usage text lists them. */
export const RUNNER_FLAGS = {
  manager: {
    type: "string",
    short: "m",
    arg: "HOST[:PORT]",
    help: [`The manager (port ${DEFAULT_PORT} if omitted; with a`, `join token, overrides the address it names).`],
  },
  workers: {
    type: "string",
    short: "j",
    arg: "N",
    help: [`Jobs to run at once (-w N too). Default: one per core;`, `0: one per core.`],
  },
  shell: {
    type: "string",
    arg: "PATH",
    help: [`Run jobs under this POSIX shell. Default /bin/sh.`],
  },
  name: {
    type: "string",
    short: "n",
    arg: "NAME",
    help: [`Name announced to the manager. Default: this`, `machine's host name.`],
  },
  "max-output": {
    type: "string",
    arg: "SIZE",
    help: [
      `Largest output a job may write (e.g. 500M, 16G).`,
      `A job that writes more is killed and reported with`,
      `status 125 and a note. Default: 16G.`,
    ],
  },
  "job-memory": {
    type: "string",
    arg: "SIZE",
    help: [
      `Run each job in a cgroup of its own with at most`,
      `SIZE of memory (e.g. 512M) and no swap: a job`,
      `over it is killed alone by the kernel and`,
      `reported with status 137 and a note. Needs`,
      `cgroup v2 with the memory controller and the`,
      `runner's cgroup delegated to it (a systemd`,
      `service with Delegate=yes); without them the`,
      `runner does not start (exit status 2).`,
    ],
  },
  "job-cpus": {
    type: "string",
    arg: "N",
    help: [`Likewise, at most N CPUs' worth of time per job`, `(e.g. 2 or 0.5); needs the cpu controller.`],
  },
  persist: {
    type: "boolean",
    help: [
      `Run as a service: keep running when the manager`,
      `goes away or has no jobs (reconnecting with`,
      `backoff); running jobs carry on, and results that`,
      `finish meanwhile are kept on disk and delivered`,
      `when a manager is back.`,
    ],
  },
  "state-dir": {
    type: "string",
    arg: "DIR",
    help: [
      `Where --persist keeps the runner's id and its`,
      `undelivered results. Default:`,
      `$XDG_STATE_HOME/vico/runner or ~/.local/state/vico/runner.`,
      `A kept result no manager takes (refused 3 times`,
      `in a row, or over its --max-output) is moved to`,
      `DIR/set-aside/ and never blocks other work.`,
    ],
  },
  "retry-max": {
    type: "string",
    arg: "DURATION",
    help: [
      `With --persist, the longest wait between attempts`,
      `to reach the manager (backoff doubles from 0.5s,`,
      `with jitter), and the wait before asking again`,
      `after the manager had no more jobs. Default: 30s.`,
    ],
  },
  plain: {
    type: "boolean",
    help: [`Do not offer the vico extension (identity, pulses,`, `timeouts); speak only the draft's protocol.`],
  },
  protocol: { type: "string", short: "P", arg: "text|binary", help: [`Protocol to speak. Default: text.`] },
  modules: {
    type: "string",
    arg: "A,B,...",
    help: [`Binary: modules this node offers; it is given`, `only tasks whose modules it has.`],
  },
  "work-dir": {
    type: "string",
    arg: "DIR",
    help: [`Binary: where task directories are made.`, `Default: a fresh temporary directory.`],
  },
  "keep-task-dirs": { type: "boolean", help: [`Binary: keep each task's directory (debugging).`] },
  join: {
    type: "string",
    arg: "TOKEN",
    heading: "Security (docs/security.md):",
    env: false,
    help: [
      `Join with the token a manager printed: its address,`,
      `its certificate's fingerprint (TLS, pinned) and`,
      `the shared secret. Any local user can read it in`,
      `/proc/PID/cmdline: prefer --join-file FILE, or`,
      `the environment variable VICO_JOIN.`,
    ],
  },
  "join-file": { type: "string", arg: "FILE", help: [`Read the join token from FILE (mode 600).`] },
  tls: { type: "boolean", help: [`Connect with TLS; trust the system's CA store.`] },
  "tls-ca": {
    type: "string",
    arg: "FILE",
    help: [
      `Connect with TLS; trust the CA certificate(s) in`,
      `FILE (PEM). The manager's certificate must name`,
      `the host given to --manager.`,
    ],
  },
  "secret-file": {
    type: "string",
    arg: "FILE",
    help: [
      `Prove this runner knows the shared secret in FILE`,
      `(mode 600), and require the manager to prove it`,
      `too, before any job crosses.`,
    ],
  },
  insecure: {
    type: "boolean",
    help: [
      `Allow a plain, unauthenticated connection to a`,
      `manager that is not on loopback (anyone who can`,
      `reach this node could pose as the manager).`,
    ],
  },
  user: { type: "string", arg: "USER", help: [`Run jobs as USER (the runner starts as root).`] },
  "allow-root": {
    type: "boolean",
    help: [
      `Run jobs as root. Without it, a runner started as`,
      `root refuses to start unless --user is given (the`,
      `environment variable VICO_ALLOW_ROOT=1 also`,
      `allows it).`,
    ],
  },
  "max-file": {
    type: "string",
    arg: "SIZE",
    help: [`Binary: largest file the manager may stage.`, `Default: 16G. Logs obey --max-output.`],
  },
  quiet: { type: "boolean", short: "q", heading: "", help: [`Log only warnings and errors.`] },
  verbose: { type: "boolean", short: "v", help: [`Log debugging detail (every job).`] },
  "log-level": { type: "string", arg: "LEVEL", help: [`trace, debug, info (default), warning or error.`] },
  "log-format": {
    type: "string",
    arg: "FORMAT",
    help: [
      `text (default; under journald: journal, without`,
      `times and with priorities), json (one JSON`,
      `object per line) or journal.`,
    ],
  },
  version: { type: "boolean", short: "V", help: [`Print the version and the protocol versions.`] },
  help: { type: "boolean", short: "h", help: [`Show this help.`] },
} as const satisfies FlagTable;

/** The parsed flags of `runner`. */
export type RunnerFlags = ReturnType<typeof parseFlags<typeof RUNNER_FLAGS>>;

/** `runner --help`. */
export const RUNNER_USAGE = `Usage: runner --manager HOST[:PORT] [options]
       runner --join TOKEN [options]

Joins a vico manager and runs the jobs it hands out, each in its own process
group, sending back the exit status and the output (stdout and stderr merged).

With the text protocol (the default) jobs are shell command lines, run as
'/bin/sh -c <job>', N at a time over one connection. With --protocol binary
the runner is a node: N sessions, each staging one task's files into a fresh
directory, running its programs, returning the files asked for, and joining
again for the next task.

Examples:
  runner --join-file ~/.vico-join --workers 16  # the token a manager printed, mode 600
  runner --manager 127.0.0.1:7707 -w 4        # a manager on this machine
  VICO_MANAGER=head:7707 VICO_JOIN_FILE=/etc/vico/join runner --persist
  runner --manager head:7707 --protocol binary --modules blast -w 8
` + "\n" + flagUsage(RUNNER_FLAGS, 29) + "\n" + `
Every flag can also be set in the environment as VICO_ and its name in
capitals, '-' as '_' (VICO_MANAGER=host:7707, VICO_WORKERS=8,
VICO_PERSIST=1, VICO_JOIN_FILE=/etc/vico/join); the command line wins.
VICO_JOIN holds a join token itself.

Signals: the first SIGINT or SIGTERM stops taking jobs and lets running ones
finish and be reported (with none running, the runner exits at once); a
second one kills them.

Exit status:
  0  the manager had no more jobs (clean FINO), or stopped by a signal after
     its running jobs were reported
  1  the connection was lost, or the manager dropped this runner, or broke
     the protocol; running jobs were killed. Or (--persist) its state
     directory was removed or replaced under it, or it could not record a
     job there (a full disk, read-only): it took no new jobs, and exited
     once its running ones were reported
  2  usage error
  3  the manager refused this runner before it ran anything (a protocol
     version it does not speak, or no remaining task fits this node's
     modules; a node that has done work and is then refused exits 0), or
     its --state-dir is held by another runner (named in the message) or
     is open to other users, or its spool directory (in TMPDIR) cannot
     be made
  4  the manager could not be verified (its TLS certificate or its proof of
     the secret) or did not accept this runner's proof: nothing ran
  130/143  a second SIGINT/SIGTERM killed running jobs
`;

/** What the flags set, checked. */
export interface RunnerSettings {
  /** The manager's address. */
  address: { hostname: string; port: number };
  /** Jobs run at once. */
  workers: number;
  /** `--max-output`. */
  maxOutput?: number;
  /** `--max-file`. */
  maxFile?: number;
  /** The protocol spoken. */
  protocol: "text" | "binary";
  /** Binary: modules this node offers. */
  modules?: string[];
  /** `--job-memory`, `--job-cpus`. */
  jobLimits?: JobLimits;
}

/**
 * Checks the flags (with the security they chose) and reads their values.
 *
 * @throws {VicoError} `USAGE` on a missing, malformed or contradictory flag; `UNSAFE` for plain,
 *   unauthenticated TCP to a manager not on loopback without `--insecure`.
 */
export function runnerSettings(flags: RunnerFlags, security: RunnerSecurity): RunnerSettings {
  if (flags.manager === undefined && security.token === undefined) {
    throw new VicoError("USAGE", "--manager HOST[:PORT] (or --join TOKEN) is required");
  }
  if (flags.manager !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(flags.manager)) {
    throw new VicoError("USAGE", `-m/--manager needs HOST[:PORT] (no scheme), got ${JSON.stringify(flags.manager)}`);
  }
  let address;
  try {
    address = parseHostPort(flags.manager ?? security.token!.manager, DEFAULT_PORT);
  } catch (err) {
    throw new VicoError("USAGE", `-m/--manager: ${(err as Error).message}`);
  }
  if (flags.shell !== undefined) checkShellHere(checkShell(flags.shell));
  const cores = Math.max(1, navigator.hardwareConcurrency);
  if (flags.workers !== undefined && !/^[0-9]{1,6}$/.test(flags.workers)) {
    throw new VicoError(
      "USAGE",
      `-j/--workers needs a whole number of jobs at a time (0: one per core), got ${JSON.stringify(flags.workers)}` +
        ` (a join token is --join-file FILE or VICO_JOIN)`,
    );
  }
  const workers = flags.workers === undefined || flags.workers === "0" ? cores : Number(flags.workers);
  const maxOutput = flags["max-output"] === undefined ? undefined : parseSize(flags["max-output"]);
  const maxFile = flags["max-file"] === undefined ? undefined : parseSize(flags["max-file"]);
  const jobLimits = parseJobLimits(flags["job-memory"], flags["job-cpus"]);
  const protocol = (flags.protocol ?? "text") as "text" | "binary";
  if (protocol !== "text" && protocol !== "binary") {
    throw new VicoError("USAGE", `--protocol must be text or binary, got ${JSON.stringify(flags.protocol)}`);
  }
  const modules = flags.modules?.split(",").map((m) => m.trim()).filter((m) => m.length > 0);
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
  if (flags.plain && security.secret !== undefined) {
    throw new VicoError("USAGE", "--plain cannot authenticate: the secret travels in the vico extension");
  }
  if (security.trust === undefined && security.secret === undefined && !isLoopback(address.hostname)) {
    if (!flags.insecure) {
      throw new VicoError(
        "UNSAFE",
        `Refusing to take jobs from ${address.hostname} over plain, unauthenticated TCP: anyone who can reach ` +
          "this node could pose as the manager and run commands here. Use --join TOKEN (the manager prints " +
          "one), or --tls-ca/--secret-file, or --insecure to accept the risk",
      );
    }
  }
  return { address, workers, maxOutput, maxFile, protocol, modules, jobLimits };
}
