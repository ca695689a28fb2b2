/**
 * The `manager` command's flags: one table that drives its parsing, its
 * usage text and its `VICO_*` variables; and what the flags mean, checked,
 * as the settings {@linkcode Manager.start} takes.
 *
 * @module
 */

import { basename, dirname, extname, join } from "node:path";
import { VicoError } from "../core/errors.ts";
import { parseDuration } from "../core/duration.ts";
import { parseSize } from "../core/size.ts";
import type { ManagerOptions } from "../manager/manager.ts";
import { DEFAULT_PORT } from "../protocol/messages.ts";
import { type FlagTable, flagUsage, intFlag, type parseFlags } from "./flags.ts";

/** Every flag of `manager`, in the order its usage text lists them. */
export const MANAGER_FLAGS = {
  jobs: {
    type: "string",
    arg: "FILE",
    help: [
      `Job list: one shell command line per line; '-' reads`,
      `standard input. Blank lines and lines starting with '#'`,
      `are skipped. A .jsonl file is a list of task bundles`,
      `(files to stage, programs, files to return, modules,`,
      `gang size, timeout): see examples/tasks.jsonl.`,
      `(-j is not --jobs: it is the number of jobs at a time.)`,
    ],
  },
  "max-procs": {
    type: "string",
    short: "j",
    arg: "N",
    help: [
      `Jobs at a time on this machine (as make -j, xargs -P,`,
      `parallel -j); 0: one per core. A template run runs here,`,
      `one job per core, unless --host or --port is given.`,
    ],
  },
  "keep-order": {
    type: "boolean",
    short: "k",
    help: [`Print outputs in the order of the arguments.`],
  },
  tag: { type: "boolean", help: [`Prefix each output line with the job's arguments.`] },
  print: {
    type: "boolean",
    help: [`Print each job's output on stdout when it ends (the`, `default for a template run).`],
  },
  "dry-run": {
    type: "boolean",
    env: false,
    help: [`Print the commands that would run, and exit 0.`],
  },
  halt: {
    type: "string",
    arg: "WHEN",
    help: [
      `soon|now,fail|success|done=N or =N%: stop starting`,
      `jobs (soon) or also end the running ones (now) once N`,
      `jobs (or N% of all) failed/succeeded/ended.`,
    ],
  },
  shell: {
    type: "string",
    arg: "PATH",
    help: [`Run jobs under this POSIX shell (e.g. /bin/bash).`, `Default /bin/sh. Local runs only.`],
  },
  joblog: { type: "string", arg: "FILE", help: [`Write GNU Parallel's joblog to FILE.`] },
  resume: {
    type: "boolean",
    env: false,
    help: [
      `Continue the latest ad-hoc run (vico-results/<date>-<n>),`,
      `or with --results DIR (or --resume=DIR) that one.`,
    ],
  },
  "resume-failed": {
    type: "boolean",
    env: false,
    help: [
      `Like --resume (--resume-failed=DIR), and also run again`,
      `the jobs that failed (non-zero status) or were lost.`,
      `Their earlier attempts stay in the journal and out/`,
      `(a re-run's output is out/<key>.<attempt>.out). With`,
      `no failure recorded, it says so and only resumes.`,
    ],
  },
  format: { type: "string", arg: "text|jsonl", help: [`Job list format, when the extension does not say.`] },
  results: {
    type: "string",
    arg: "DIR",
    help: [
      `Results directory (journal.jsonl plus out/). Default:`,
      `next to the job file, named after it without its`,
      `extension plus '.results' (jobs.txt -> jobs.results),`,
      `that list's own: another list that would share it`,
      `(jobs.jsonl beside jobs.txt) is refused it (exit 3)`,
      `unless it is named here. For a template or standard`,
      `input: a new vico-results/<date>-<n>/ each run.`,
      `Running again on the same directory skips the jobs it`,
      `has already settled (matched by content, not line`,
      `number). It must be new, empty, or vico's (marked by`,
      `.vico-results); one manager at a time holds it (a lock`,
      `in .vico-lock).`,
    ],
  },
  fresh: {
    type: "boolean",
    help: [`Start a new run: an existing results directory is`, `moved aside (to DIR.<date>) once the port is bound.`],
  },
  host: {
    type: "string",
    arg: "HOST",
    help: [
      `Address to listen on. Default 127.0.0.1 (this machine`,
      `only); use 0.0.0.0 to accept runners from other hosts.`,
      `On any address but loopback the manager is secure by`,
      `default: with no --tls-cert/--secret-file it enrolls`,
      `(see below) unless told --insecure.`,
    ],
  },
  port: {
    type: "string",
    short: "p",
    arg: "PORT",
    help: [
      `Port to listen on. Default ${DEFAULT_PORT}; with --local (or a`,
      `template run) and neither --port nor --host, none: only`,
      `this machine's workers run the jobs.`,
    ],
  },
  local: {
    type: "string",
    short: "l",
    arg: "N",
    help: [
      `Also run N workers in this process: a complete run on`,
      `this machine, like 'xargs -P N'. With no N (last, or`,
      `before another option): one per core.`,
    ],
  },
  timeout: {
    type: "string",
    arg: "DURATION",
    help: [
      `Time limit for each job: its process group is ended`,
      `(SIGTERM, then SIGKILL) and its status is that of the`,
      `signal. Enforced by vico runners and binary nodes; a`,
      `task bundle may set its own.`,
    ],
  },
  lease: {
    type: "string",
    arg: "DURATION",
    help: [
      `How long the jobs of a vanished vico runner wait for it`,
      `to come back (its jobs keep running) before they go to`,
      `others. Default 2m.`,
    ],
  },
  pulse: {
    type: "string",
    arg: "DURATION",
    help: [
      `Liveness interval: a vico runner or binary node silent`,
      `for three of them is taken for lost. Default 10s.`,
    ],
  },
  "blackhole-streak": {
    type: "string",
    arg: "N",
    help: [
      `Suspect a runner after N jobs in a row fail fast`,
      `(within --fast-fail) while other runners succeed; after`,
      `a 1s break, quarantine it if it still fails fast while`,
      `the others' jobs do not (or once two jobs that failed`,
      `fast on it succeed elsewhere): it gets no jobs for`,
      `--quarantine (doubling each time) and the jobs it`,
      `failed run elsewhere. 0 turns it off. Default 5 (0`,
      `on one machine: --local without --port, or a template run).`,
    ],
  },
  "fast-fail": {
    type: "string",
    arg: "DURATION",
    help: [`A failure this soon after the hand-out is fast.`, `Default 500ms.`],
  },
  quarantine: { type: "string", arg: "DURATION", help: [`First quarantine of a black-hole runner. Default 1m.`] },
  retries: {
    type: "string",
    arg: "N",
    help: [
      `Try a job that exits non-zero up to N more times`,
      `(each failed attempt is kept in the journal). Default 0.`,
    ],
  },
  "max-attempts": {
    type: "string",
    arg: "N",
    help: [`Give a job up as lost after its runner vanished N`, `times. Default 3.`],
  },
  "stop-timeout": {
    type: "string",
    arg: "DURATION",
    help: [`On SIGINT/SIGTERM, how long to wait for running jobs`, `to report before stopping. Default 30s.`],
  },
  "transfer-timeout": {
    type: "string",
    arg: "DURATION",
    help: [
      `Drop a runner whose output stalls this long in the`,
      `middle of a result, or a binary node that takes no`,
      `byte of a File this long (its job is handed out`,
      `again). Default: 60s.`,
    ],
  },
  "max-connections": {
    type: "string",
    arg: "N",
    help: [`Most runner connections at once (more are closed at`, `once). Default 4096.`],
  },
  "max-unauthenticated": {
    type: "string",
    arg: "N",
    help: [
      `Most connections still in their handshake (not yet`,
      `authenticated) at once; more wait in the listen`,
      `backlog. Default 256.`,
    ],
  },
  "max-output": {
    type: "string",
    arg: "SIZE",
    help: [`Largest output one text job may announce (REZULTO);`, `a runner announcing more is dropped. Default 16G.`],
  },
  "max-file": { type: "string", arg: "SIZE", help: [`Largest file or log a binary node may return.`, `Default 16G.`] },
  "tls-cert": {
    type: "string",
    arg: "FILE",
    heading: "Security (see docs/security.md):",
    help: [`Serve TLS (both protocols, one port) with this`],
  },
  "tls-key": {
    type: "string",
    arg: "FILE",
    help: [`certificate (chain) and private key, PEM. Make a`, `private CA with scripts/make_certs.sh.`],
  },
  "secret-file": {
    type: "string",
    arg: "FILE",
    help: [
      `Runners must prove they know this shared secret (and`,
      `the manager proves it to them) before any job crosses.`,
      `The file must be readable by its owner only.`,
    ],
  },
  enroll: {
    type: "boolean",
    help: [
      `Make (first start) or load a self-signed certificate`,
      `and a secret in the state directory and print a join`,
      `token for runners ('runner --join-file FILE'). The`,
      `default on a non-loopback --host with no TLS or secret`,
      `given.`,
    ],
  },
  advertise: {
    type: "string",
    arg: "HOST[:PORT]",
    help: [`The address the join token names. Default: this`, `host's name (or --host) and the bound port.`],
  },
  "state-dir": {
    type: "string",
    arg: "DIR",
    help: [
      `Where enrollment keeps its key, certificate, secret`,
      `and join-token. Default`,
      `$XDG_STATE_HOME/vico/manager or`,
      `~/.local/state/vico/manager.`,
    ],
  },
  insecure: {
    type: "boolean",
    help: [
      `Serve a non-loopback address with neither TLS nor a`,
      `secret: anyone who reaches the port can take jobs`,
      `and forge results.`,
    ],
  },
  "status-port": {
    type: "string",
    arg: "PORT",
    heading: "",
    help: [
      `Also serve a read-only status page on this port (0:`,
      `any free one): / (live page with a timeline of every`,
      `job), /status (JSON), /metrics (Prometheus),`,
      `/timeline (JSON). It has no authentication and shows`,
      `command lines and host names: keep it on loopback`,
      `or a trusted network. It closes when the run ends`,
      `(up to 3s later while a page is watching, so that the`,
      `page shows the end); 'manager report DIR --html FILE'`,
      `writes the same page afterwards.`,
    ],
  },
  "status-host": { type: "string", arg: "HOST", help: [`Address of the status page. Default 127.0.0.1.`] },
  "no-progress": {
    type: "boolean",
    help: [`No progress bar on a terminal, and no progress line`, `logged every 10s elsewhere.`],
  },
  quiet: { type: "boolean", short: "q", help: [`Log only warnings and errors (--log-level warning).`] },
  verbose: { type: "boolean", short: "v", help: [`Log debugging detail (--log-level debug).`] },
  "log-level": { type: "string", arg: "LEVEL", help: [`trace, debug, info (default), warning or error.`] },
  "log-format": {
    type: "string",
    arg: "FORMAT",
    help: [
      `text (default; under journald: journal, without`,
      `times and with priorities), json (one JSON object`,
      `per line) or journal.`,
    ],
  },
  version: { type: "boolean", short: "V", help: [`Print the version and the protocol versions.`] },
  help: { type: "boolean", short: "h", help: [`Show this help.`] },
} as const satisfies FlagTable;

/** The parsed flags of `manager`. */
export type ManagerFlags = ReturnType<typeof parseFlags<typeof MANAGER_FLAGS>>;

/** `manager --help`. */
export const MANAGER_USAGE = `Usage: manager [options] COMMAND [ARG...] ::: A B ... [::: C D ...]
       manager [options] COMMAND [ARG...] < arguments (one per line)
       manager --jobs FILE|- [options]
       manager verify RESULTS_DIR
       manager report RESULTS_DIR [--html FILE] [--json]

Runs a command template once per argument (as GNU Parallel: ::: A B,
:::+ linked, :::: FILE, or one argument per line on standard input;
{} {.} {/} {//} {/.} {#} {%} {1} {2.} ...), or a list of shell jobs,
here (-j N) or on vico runners (--host/--port), and records every result.
A template run prints each job's output on stdout when it ends; its
results go to a new vico-results/<date>-<n>/ each time. A line that is
not valid UTF-8 or a command over 64 KiB is refused alone, named with
its line number, and the rest runs (the run then exits 1).
'manager verify' re-hashes every stored output and returned file of a
results directory against its journal (exit 1 on any mismatch).
'manager report' summarizes a run from its journal (per host, slowest
jobs, exit statuses) and can write its timeline as one HTML page.

Examples:
  manager -j 4 gzip ::: *.txt                  # 4 at a time, here
  find . -name '*.log' | manager -k wc -l {}   # arguments from stdin, in order
  manager --port 7707 gzip ::: *.txt           # the same, served to runners
  manager --jobs jobs.txt --local 4            # run here, 4 at a time
  manager --jobs jobs.txt --host 0.0.0.0       # serve runners; prints a join token
  seq 100 | sed 's/^/echo /' | manager --jobs - --local 2
  manager --jobs tasks.jsonl --host 0.0.0.0 --retries 2 --timeout 1h
  manager verify jobs.results
` + "\n" + flagUsage(MANAGER_FLAGS, 23) + "\n" + `
Every flag can also be set in the environment as VICO_ and its name in
capitals, '-' as '_' (VICO_JOBS=list.txt, VICO_PORT=7707, VICO_FRESH=1);
the command line wins. For systemd environment files and batch scripts.

Runners join with:  runner --join-file FILE --workers N   (secure default;
                    or VICO_JOIN=TOKEN: not --join TOKEN, which every
                    local user can read in /proc/PID/cmdline)
                or  runner --manager HOST:PORT --workers N   (loopback)
Binary nodes with:  runner --manager HOST:PORT --workers N --protocol binary
(text runners and binary nodes share the one port).

Signals: the first SIGINT/SIGTERM (or SIGHUP, SIGQUIT) stops handing out
jobs and waits for the running ones (up to --stop-timeout); a second one
stops at once. Either way the journal is consistent and a restart on the
same results finishes the rest.

Exit status:
  0  every job in the list exited 0
  1  at least one job exited non-zero (see the journal), or a line was
     refused (not UTF-8, over 64 KiB); with --halt, GNU
     Parallel's status, except 2-4 and 128 and over, which become 1;
     or an output could not be printed on stdout (a full disk)
  2  usage error or invalid job list (nothing ran)
  3  could not start (port in use; results directory not vico's, in use
     by another manager, another list's default one, or unusable, e.g.
     disk full; enrollment failed); or the results directory could no
     longer take records during the run (run again once fixed)
  130/143  stopped by SIGINT/SIGTERM before every job settled (run again
     on the same results directory to finish)
  141  stdout's reader went away (| head): the run stopped there
`;

/** What the flags set, checked: the parts of {@linkcode ManagerOptions} that come straight from them. */
export type ManagerSettings =
  & Pick<
    ManagerOptions,
    | "port"
    | "serveRunners"
    | "local"
    | "transferIdleTimeoutMs"
    | "stopTimeoutMs"
    | "retries"
    | "maxAttempts"
    | "jobTimeoutMs"
    | "leaseMs"
    | "pulseSec"
    | "quarantine"
    | "maxConnections"
    | "maxHandshaking"
    | "limits"
  >
  & { jobs?: string; local: number; port: number; statusPort?: number };

/** What kind of run the command line asks for, as {@linkcode managerSettings} needs it. */
export interface RunKind {
  /** A template or commands from standard input rather than `--jobs FILE`. */
  readonly adhoc: boolean;
  /** This machine's cores (`-j 0`, and a template run's default). */
  readonly cores: number;
}

/**
 * Parses `-j/--max-procs`: a whole number, 0 meaning one per core.
 *
 * @example
 * ```ts
 * import { maxProcs } from "./manager_flags.ts";
 * console.assert(maxProcs("4", 2) === 4 && maxProcs("0", 2) === 2);
 * ```
 * @throws {VicoError} `USAGE` naming the flag and the expected form (and `--jobs FILE`, for the old spelling).
 */
export function maxProcs(value: string, cores: number): number {
  if (!/^[0-9]{1,6}$/.test(value)) {
    throw new VicoError(
      "USAGE",
      `-j/--max-procs needs a whole number of jobs at a time (0: one per core), got ${JSON.stringify(value)}` +
        ` (a job list file is --jobs FILE)`,
    );
  }
  const n = Number(value);
  return n === 0 ? Math.max(1, cores) : n;
}

/**
 * Checks the flags and reads their values.
 *
 * @throws {VicoError} `USAGE` on a missing, malformed or contradictory flag.
 */
export function managerSettings(
  flags: ManagerFlags,
  kind: RunKind = { adhoc: false, cores: 1 },
): ManagerSettings {
  const statusPort = flags["status-port"] === undefined ? undefined : intFlag("status-port", flags["status-port"], 0);
  if (statusPort !== undefined && statusPort > 65535) {
    throw new VicoError("USAGE", `--status-port ${statusPort} is out of range`);
  }
  const procs = flags["max-procs"] === undefined ? undefined : maxProcs(flags["max-procs"], kind.cores);
  if (flags.jobs === undefined && !kind.adhoc) {
    throw new VicoError("USAGE", "--jobs FILE is required ('-' for standard input), or a COMMAND with ::: arguments");
  }
  if (flags.jobs !== undefined && kind.adhoc) {
    throw new VicoError("USAGE", "a COMMAND template and --jobs FILE do not go together: give one or the other");
  }
  // A template run is local unless told to serve (--host/--port), as Parallel's.
  const served = flags.host !== undefined || flags.port !== undefined;
  if (procs !== undefined && flags.local !== undefined) {
    throw new VicoError("USAGE", "-j/--max-procs and --local say the same thing: give one");
  }
  const local = flags.local !== undefined
    ? intFlag("local", flags.local, 0)
    : procs ?? (kind.adhoc && !served ? Math.max(1, kind.cores) : 0);
  const port = intFlag("port", flags.port, local > 0 ? 0 : DEFAULT_PORT);
  if (port > 65535) throw new VicoError("USAGE", `--port ${port} is out of range`);
  const transferIdleTimeoutMs = flags["transfer-timeout"] === undefined
    ? undefined
    : parseDuration(flags["transfer-timeout"]);
  const stopTimeoutMs = flags["stop-timeout"] === undefined ? undefined : parseDuration(flags["stop-timeout"]);
  const retries = intFlag("retries", flags.retries, 0);
  const jobTimeoutMs = flags.timeout === undefined ? undefined : parseDuration(flags.timeout);
  const quarantine = {
    // On one machine there is no other host to send a black hole's jobs to: a local run (a template run, or
    // --local without --port or --host) has it off, and so a failure settles (and counts for --halt) at once
    // rather than being held as a suspect while its worker starts another job.
    streak: intFlag("blackhole-streak", flags["blackhole-streak"], (kind.adhoc || local > 0) && !served ? 0 : 5),
    fastMs: flags["fast-fail"] === undefined ? undefined : parseDuration(flags["fast-fail"]),
    initialMs: flags.quarantine === undefined ? undefined : parseDuration(flags.quarantine),
  };
  const leaseMs = flags.lease === undefined ? undefined : parseDuration(flags.lease);
  const pulseSec = flags.pulse === undefined ? undefined : Math.max(1, Math.round(parseDuration(flags.pulse) / 1000));
  const maxAttempts = intFlag("max-attempts", flags["max-attempts"], 3, 1);
  if (retries > 250) throw new VicoError("USAGE", "--retries is at most 250");
  const maxConnections = intFlag("max-connections", flags["max-connections"], 4096, 1);
  const maxHandshaking = intFlag("max-unauthenticated", flags["max-unauthenticated"], 256, 1);
  const limits: { maxOutputBytes?: number; maxFileBytes?: number } = {};
  if (flags["max-output"] !== undefined) limits.maxOutputBytes = parseSize(flags["max-output"]);
  if (flags["max-file"] !== undefined) limits.maxFileBytes = parseSize(flags["max-file"]);
  if ((flags["tls-cert"] === undefined) !== (flags["tls-key"] === undefined)) {
    throw new VicoError("USAGE", "--tls-cert and --tls-key go together");
  }
  if (flags.enroll && (flags["tls-cert"] !== undefined || flags["secret-file"] !== undefined)) {
    throw new VicoError("USAGE", "--enroll makes its own certificate and secret: drop --tls-cert and --secret-file");
  }
  if (flags.insecure && (flags.enroll || flags["tls-cert"] !== undefined || flags["secret-file"] !== undefined)) {
    throw new VicoError("USAGE", "--insecure contradicts --enroll, --tls-cert and --secret-file");
  }
  return {
    jobs: flags.jobs,
    statusPort,
    local,
    port,
    // A run on this machine alone (local workers, neither --port nor --host) opens no port: no one else can join it.
    serveRunners: served || local === 0 || flags.enroll === true || flags["tls-cert"] !== undefined ||
      flags["secret-file"] !== undefined || flags.advertise !== undefined,
    transferIdleTimeoutMs,
    stopTimeoutMs,
    retries,
    maxAttempts,
    jobTimeoutMs,
    leaseMs,
    pulseSec,
    quarantine: Object.fromEntries(Object.entries(quarantine).filter(([, v]) => v !== undefined)),
    maxConnections,
    maxHandshaking,
    limits,
  };
}

/** Whether `host` is a wildcard listen address (every interface). */
export function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

/** The `host:port` a join token names. */
export function advertiseAddress(flag: string | undefined, hostname: string, port: number): string {
  if (flag !== undefined) return /:[0-9]+$/.test(flag) && !flag.endsWith("]") ? flag : `${flag}:${port}`;
  const host = isWildcard(hostname) ? Deno.hostname() : hostname;
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * `dir/jobs.txt` → `dir/jobs.results`; standard input → `vico-results`.
 *
 * @example
 * ```ts
 * import { defaultResultsDir } from "./manager_flags.ts";
 * console.assert(defaultResultsDir("lists/jobs.txt") === "lists/jobs.results");
 * console.assert(defaultResultsDir("-") === "vico-results");
 * ```
 */
export function defaultResultsDir(jobsPath: string): string {
  // (The manager gives standard input a new ad-hoc directory under it instead.)
  if (jobsPath === "-") return "vico-results";
  const base = basename(jobsPath, extname(jobsPath)) || basename(jobsPath);
  return join(dirname(jobsPath), `${base}.results`);
}
