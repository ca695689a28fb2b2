/**
 * `manager`: serves a job list to vico runners and records every result.
 *
 * @module
 */

import { basename, dirname, extname, join } from "node:path";
import { JobListError, VicoError } from "../core/errors.ts";
import { readJobList } from "../manager/jobs/job_list.ts";
import { Manager } from "../manager/manager.ts";
import { DEFAULT_PORT } from "../protocol/messages.ts";
import { localRunners } from "./local_runners.ts";
import { formatSummary, ProgressBar, ProgressLog } from "../manager/observe/progress.ts";
import { verifyMain } from "./verify_main.ts";
import { reportMain } from "./report_main.ts";
import { StatusServer } from "../manager/observe/status_server.ts";
import { enroll, type Enrollment, writeJoinToken } from "../manager/sessions/enrollment.ts";
import type { SharedSecret } from "../protocol/auth.ts";
import type { TlsIdentity } from "../transport/tls.ts";
import { complain, ExitCode, intFlag, isLoopback, parseFlags } from "./flags.ts";
import { parseDuration } from "../core/duration.ts";
import { readPrivateFile, readSecretFile } from "../transport/secret_file.ts";
import { parseSize } from "../core/size.ts";
import { defaultStateDir } from "../io/state_dir.ts";
import { logger, loggingFromFlags, setupLogging } from "../util/log.ts";
import { versionText } from "./version.ts";

const USAGE = `Usage: manager --jobs FILE|- [options]
       manager verify RESULTS_DIR
       manager report RESULTS_DIR [--html FILE] [--json]

Serves a list of shell jobs to vico runners and records every result.
'manager verify' re-hashes every stored output and returned file of a
results directory against its journal (exit 1 on any mismatch).
'manager report' summarizes a run from its journal (per host, slowest
jobs, exit statuses) and can write its timeline as one HTML page.

Examples:
  manager --jobs jobs.txt --local 4            # run here, 4 at a time
  manager --jobs jobs.txt --host 0.0.0.0       # serve runners; prints a join token
  seq 100 | sed 's/^/echo /' | manager --jobs - --local 2
  manager --jobs tasks.jsonl --host 0.0.0.0 --retries 2 --timeout 1h
  manager verify jobs.results

  -j, --jobs FILE      Job list: one shell command line per line; '-' reads
                       standard input. Blank lines and lines starting with '#'
                       are skipped. A .jsonl file is a list of task bundles
                       (files to stage, programs, files to return, modules,
                       gang size, timeout): see examples/tasks.jsonl.
      --format text|jsonl
                       Job list format, when the extension does not say.
  -r, --results DIR    Results directory (journal.jsonl plus out/). Default:
                       next to the job file, named after it without its
                       extension plus '.results' (jobs.txt -> jobs.results);
                       ./vico-results for standard input. Running again on the
                       same directory skips the jobs it has already settled
                       (matched by content, not line number). It must be
                       new, empty, or vico's (marked by .vico-results); one
                       manager at a time holds it (a lock in .vico-lock).
      --fresh          Start a new run: an existing results directory is
                       moved aside (to DIR.<date>) once the port is bound.
      --host HOST      Address to listen on. Default 127.0.0.1 (this machine
                       only); use 0.0.0.0 to accept runners from other hosts.
                       On any address but loopback the manager is secure by
                       default: with no --tls-cert/--secret-file it enrolls
                       (see below) unless told --insecure.
  -p, --port PORT      Port to listen on. Default ${DEFAULT_PORT}; with --local and
                       no --port, any free port.
  -l, --local N        Also run N workers in this process: a complete run on
                       this machine, like 'xargs -P N'.
      --timeout DURATION
                       Time limit for each job: its process group is ended
                       (SIGTERM, then SIGKILL) and its status is that of the
                       signal. Enforced by vico runners and binary nodes; a
                       task bundle may set its own.
      --lease DURATION How long the jobs of a vanished vico runner wait for it
                       to come back (its jobs keep running) before they go to
                       others. Default 2m.
      --pulse DURATION Liveness interval: a vico runner or binary node silent
                       for three of them is taken for lost. Default 10s.
      --blackhole-streak N
                       Suspect a runner after N jobs in a row fail fast
                       (within --fast-fail) while other runners succeed; after
                       a 1s break, quarantine it if it still fails fast while
                       the others' jobs do not (or once two jobs that failed
                       fast on it succeed elsewhere): it gets no jobs for
                       --quarantine (doubling each time) and the jobs it
                       failed run elsewhere. 0 turns it off. Default 5.
      --fast-fail DURATION
                       A failure this soon after the hand-out is fast.
                       Default 500ms.
      --quarantine DURATION
                       First quarantine of a black-hole runner. Default 1m.
      --retries N      Try a job that exits non-zero up to N more times
                       (each failed attempt is kept in the journal). Default 0.
      --max-attempts N Give a job up as lost after its runner vanished N
                       times. Default 3.
      --stop-timeout DURATION
                       On SIGINT/SIGTERM, how long to wait for running jobs
                       to report before stopping. Default 30s.
      --transfer-timeout DURATION
                       Drop a runner whose output stalls this long in the
                       middle of a result, or a binary node that takes no
                       byte of a File this long (its job is handed out
                       again). Default: 60s.
      --max-connections N
                       Most runner connections at once (more are closed at
                       once). Default 4096.
      --max-unauthenticated N
                       Most connections still in their handshake (not yet
                       authenticated) at once; more wait in the listen
                       backlog. Default 256.
      --max-output SIZE
                       Largest output one text job may announce (REZULTO);
                       a runner announcing more is dropped. Default 16G.
      --max-file SIZE  Largest file or log a binary node may return.
                       Default 16G.

Security (see docs/security.md):
      --tls-cert FILE  Serve TLS (both protocols, one port) with this
      --tls-key FILE   certificate (chain) and private key, PEM. Make a
                       private CA with scripts/make_certs.sh.
      --secret-file FILE
                       Runners must prove they know this shared secret (and
                       the manager proves it to them) before any job crosses.
                       The file must be readable by its owner only.
      --enroll         Make (first start) or load a self-signed certificate
                       and a secret in the state directory and print a join
                       token for runners ('runner --join-file FILE'). The
                       default on a non-loopback --host with no TLS or secret
                       given.
      --advertise HOST[:PORT]
                       The address the join token names. Default: this
                       host's name (or --host) and the bound port.
      --state-dir DIR  Where enrollment keeps its key, certificate, secret
                       and join-token. Default
                       $XDG_STATE_HOME/vico/manager or
                       ~/.local/state/vico/manager.
      --insecure       Serve a non-loopback address with neither TLS nor a
                       secret: anyone who reaches the port can take jobs
                       and forge results.

      --status-port PORT
                       Also serve a read-only status page on this port (0:
                       any free one): / (live page with a timeline of every
                       job), /status (JSON), /metrics (Prometheus),
                       /timeline (JSON). It has no authentication and shows
                       command lines and host names: keep it on loopback
                       or a trusted network. It closes when the run ends
                       (up to 3s later while a page is watching, so that the
                       page shows the end); 'manager report DIR --html FILE'
                       writes the same page afterwards.
      --status-host HOST
                       Address of the status page. Default 127.0.0.1.
      --no-progress    No progress bar on a terminal, and no progress line
                       logged every 10s elsewhere.
  -q, --quiet          Log only warnings and errors (--log-level warning).
  -v, --verbose        Log debugging detail (--log-level debug).
      --log-level LEVEL
                       trace, debug, info (default), warning or error.
      --log-format FORMAT
                       text (default; under journald: journal, without
                       times and with priorities), json (one JSON object
                       per line) or journal.
  -V, --version        Print the version and the protocol versions.
  -h, --help           Show this help.

Every flag can also be set in the environment as VICO_ and its name in
capitals, '-' as '_' (VICO_JOBS=list.txt, VICO_PORT=7707, VICO_FRESH=1);
the command line wins. For systemd environment files and batch scripts.

Runners join with:  runner --join-file FILE --workers N   (secure default;
                    or VICO_JOIN=TOKEN: not --join TOKEN, which every
                    local user can read in /proc/PID/cmdline)
                or  runner --manager HOST:PORT --workers N   (loopback)
Binary nodes with:  runner --manager HOST:PORT --workers N --protocol binary
(text runners and binary nodes share the one port).

Signals: the first SIGINT/SIGTERM stops handing out jobs and waits for the
running ones (up to --stop-timeout); a second one stops at once. Either way
the journal is consistent and a restart on the same results finishes the rest.

Exit status:
  0  every job in the list exited 0
  1  at least one job exited non-zero (see the journal)
  2  usage error or invalid job list (nothing ran)
  3  could not start (port in use; results directory not vico's, in use
     by another manager, or unusable, e.g. disk full; enrollment failed)
  130/143  stopped by SIGINT/SIGTERM before every job settled (run again
     on the same results directory to finish)
`;

/** Runs the manager command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args[0] === "verify") return await verifyMain(args.slice(1));
  if (args[0] === "report") return await reportMain(args.slice(1));
  let flags;
  try {
    flags = parseFlags(
      args,
      {
        jobs: { type: "string", short: "j" },
        format: { type: "string" },
        results: { type: "string", short: "r" },
        host: { type: "string" },
        port: { type: "string", short: "p" },
        local: { type: "string", short: "l" },
        "transfer-timeout": { type: "string" },
        timeout: { type: "string" },
        lease: { type: "string" },
        pulse: { type: "string" },
        "blackhole-streak": { type: "string" },
        "fast-fail": { type: "string" },
        quarantine: { type: "string" },
        "stop-timeout": { type: "string" },
        retries: { type: "string" },
        "max-attempts": { type: "string" },
        fresh: { type: "boolean" },
        "max-connections": { type: "string" },
        "max-unauthenticated": { type: "string" },
        "max-output": { type: "string" },
        "max-file": { type: "string" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "secret-file": { type: "string" },
        enroll: { type: "boolean" },
        advertise: { type: "string" },
        "state-dir": { type: "string" },
        insecure: { type: "boolean" },
        "no-progress": { type: "boolean" },
        "status-port": { type: "string" },
        "status-host": { type: "string" },
        quiet: { type: "boolean", short: "q" },
        verbose: { type: "boolean", short: "v" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        version: { type: "boolean", short: "V" },
        help: { type: "boolean", short: "h" },
      },
    );
  } catch (err) {
    return complain("manager", `${(err as Error).message}\n\n${USAGE}`, ExitCode.USAGE);
  }
  if (flags.help) {
    console.log(USAGE);
    return ExitCode.OK;
  }
  if (flags.version) {
    console.log(versionText("manager"));
    return ExitCode.OK;
  }
  let logging;
  try {
    logging = loggingFromFlags(flags);
  } catch (err) {
    return complain("manager", (err as Error).message, ExitCode.USAGE);
  }
  await setupLogging(logging);
  const log = logger("manager");

  let local: number, port: number, transferIdleTimeoutMs: number | undefined, stopTimeoutMs: number | undefined;
  let retries: number, maxAttempts: number;
  let jobTimeoutMs: number | undefined, leaseMs: number | undefined, pulseSec: number | undefined;
  let quarantine: { streak: number; fastMs?: number; initialMs?: number };
  let maxConnections: number, maxHandshaking: number;
  const limits: { maxOutputBytes?: number; maxFileBytes?: number } = {};
  let statusPort: number | undefined;
  try {
    statusPort = flags["status-port"] === undefined ? undefined : intFlag("status-port", flags["status-port"], 0);
    if (statusPort !== undefined && statusPort > 65535) {
      throw new VicoError("USAGE", `--status-port ${statusPort} is out of range`);
    }
    if (flags.jobs === undefined) throw new VicoError("USAGE", "--jobs FILE is required ('-' for standard input)");
    local = intFlag("local", flags.local, 0);
    port = intFlag("port", flags.port, local > 0 ? 0 : DEFAULT_PORT);
    if (port > 65535) throw new VicoError("USAGE", `--port ${port} is out of range`);
    transferIdleTimeoutMs = flags["transfer-timeout"] === undefined
      ? undefined
      : parseDuration(flags["transfer-timeout"]);
    stopTimeoutMs = flags["stop-timeout"] === undefined ? undefined : parseDuration(flags["stop-timeout"]);
    retries = intFlag("retries", flags.retries, 0);
    jobTimeoutMs = flags.timeout === undefined ? undefined : parseDuration(flags.timeout);
    quarantine = {
      streak: intFlag("blackhole-streak", flags["blackhole-streak"], 5),
      fastMs: flags["fast-fail"] === undefined ? undefined : parseDuration(flags["fast-fail"]),
      initialMs: flags.quarantine === undefined ? undefined : parseDuration(flags.quarantine),
    };
    leaseMs = flags.lease === undefined ? undefined : parseDuration(flags.lease);
    pulseSec = flags.pulse === undefined ? undefined : Math.max(1, Math.round(parseDuration(flags.pulse) / 1000));
    maxAttempts = intFlag("max-attempts", flags["max-attempts"], 3, 1);
    if (retries > 250) throw new VicoError("USAGE", "--retries is at most 250");
    maxConnections = intFlag("max-connections", flags["max-connections"], 4096, 1);
    maxHandshaking = intFlag("max-unauthenticated", flags["max-unauthenticated"], 256, 1);
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
  } catch (err) {
    return complain("manager", `${(err as Error).message}\n\n${USAGE}`, ExitCode.USAGE);
  }

  if (flags.format !== undefined && flags.format !== "text" && flags.format !== "jsonl") {
    return complain("manager", `--format must be text or jsonl, got ${JSON.stringify(flags.format)}`, ExitCode.USAGE);
  }
  let jobs;
  try {
    jobs = await readJobList(flags.jobs, { format: flags.format as "text" | "jsonl" | undefined });
  } catch (err) {
    if (err instanceof JobListError) return complain("manager", `${flags.jobs}: ${err.message}`, ExitCode.USAGE);
    return complain("manager", `cannot read job list ${flags.jobs}: ${(err as Error).message}`, ExitCode.USAGE);
  }
  const resultsDir = flags.results ?? defaultResultsDir(flags.jobs);

  // Security: given TLS and/or secret, enrollment, or (loopback or --insecure) none.
  const hostname = flags.host ?? "127.0.0.1";
  let tls: TlsIdentity | undefined, secret: SharedSecret | undefined;
  const wantEnroll = flags.enroll ||
    (!isLoopback(hostname) && !flags.insecure && flags["tls-cert"] === undefined &&
      flags["secret-file"] === undefined);
  try {
    if (flags["tls-cert"] !== undefined && flags["tls-key"] !== undefined) {
      tls = {
        certPem: await Deno.readTextFile(flags["tls-cert"]).catch((err) => {
          throw new VicoError("USAGE", `Cannot read --tls-cert ${flags["tls-cert"]}: ${err.message}`);
        }),
        keyPem: new TextDecoder().decode(await readPrivateFile(flags["tls-key"], "TLS private key")),
      };
    }
    if (flags["secret-file"] !== undefined) secret = await readSecretFile(flags["secret-file"]);
  } catch (err) {
    return complain("manager", (err as Error).message, ExitCode.USAGE);
  }
  let enrollment: Enrollment | undefined;
  if (wantEnroll) {
    try {
      enrollment = await enroll({
        stateDir: flags["state-dir"] ?? defaultStateDir("manager"),
        hostnames: [Deno.hostname(), ...(isWildcard(hostname) ? [] : [hostname])],
      });
    } catch (err) {
      return complain("manager", `cannot enroll: ${(err as Error).message}`, ExitCode.CANNOT_START);
    }
    ({ tls, secret } = enrollment);
    log.info(
      enrollment.created
        ? "Enrolled: new key, certificate (SHA-256 {fp}) and secret in {dir}"
        : "Loaded key, certificate (SHA-256 {fp}) and secret from {dir}",
      { fp: enrollment.fingerprint, dir: enrollment.stateDir },
    );
  }
  if (!wantEnroll && !isLoopback(hostname)) {
    if (tls === undefined && secret === undefined) {
      log.warn(
        "--insecure: serving {host} with neither TLS nor a secret; anyone who reaches the port can take jobs, " +
          "read them and forge results",
        { host: hostname },
      );
    } else if (secret === undefined) {
      log.warn(
        "TLS without --secret-file: runners know who the manager is, but any client that reaches the port " +
          "can take jobs and forge results",
      );
    } else if (tls === undefined) {
      log.warn(
        "--secret-file without TLS: both sides are authenticated, but jobs and outputs cross the network in " +
          "plain text and an attacker on the path could alter them",
      );
    }
  }

  // The read-only status page, before the run starts so that a port in use
  // stops it before anything is written. It answers 500 until the run is up.
  let manager: Manager;
  let statusServer: StatusServer | undefined;
  if (statusPort !== undefined) {
    const statusHost = flags["status-host"] ?? "127.0.0.1";
    try {
      statusServer = StatusServer.start({
        hostname: statusHost,
        port: statusPort,
        snapshot: (limits) => manager.status.snapshot(limits),
        finished: () => manager.status.counts().finished,
        settledByHost: () => manager.settledByHost(),
        resultsDir,
      });
    } catch (err) {
      const why = err instanceof Deno.errors.AddrInUse ? "the port is in use" : (err as Error).message;
      return complain(
        "manager",
        `cannot serve the status page on ${statusHost}:${statusPort}: ${why}`,
        ExitCode.CANNOT_START,
      );
    }
    const { hostname: sh, port: sp } = statusServer.address;
    log.info("Status page on http://{host}:{port}/ (read-only, no authentication; also /status, /metrics, /timeline)", {
      host: sh.includes(":") ? `[${sh}]` : sh,
      port: sp,
    });
    if (!isLoopback(statusHost)) {
      log.warn(
        "The status page on {host} has no authentication: whoever reaches it sees command lines and host names",
        {
          host: statusHost,
        },
      );
    }
  }
  try {
    manager = await Manager.start({
      jobs,
      resultsDir,
      fresh: flags.fresh,
      hostname,
      port,
      local,
      localWorkers: localRunners,
      tls,
      secret,
      limits,
      maxConnections,
      maxHandshaking,
      retries,
      maxAttempts,
      jobTimeoutMs,
      leaseMs,
      pulseSec,
      quarantine: Object.fromEntries(Object.entries(quarantine).filter(([, v]) => v !== undefined)),
      stopTimeoutMs,
      transferIdleTimeoutMs,
    });
  } catch (err) {
    await statusServer?.close();
    if (err instanceof Deno.errors.AddrInUse) {
      return complain("manager", `port ${port} is already in use; choose another with --port`, ExitCode.CANNOT_START);
    }
    return complain("manager", `cannot start: ${(err as Error).message}`, ExitCode.CANNOT_START);
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
    let written;
    try {
      written = await writeJoinToken(enrollment, advertiseAddress(flags.advertise, hostname, bound));
    } catch (err) {
      manager.close();
      await manager.finished.catch(() => {});
      await statusServer?.close();
      return complain("manager", `cannot write the join token: ${(err as Error).message}`, ExitCode.CANNOT_START);
    }
    // The token is what a user copies: on stdout, on a line of its own. Not inside a command
    // line to paste: a process's arguments are in /proc/PID/cmdline for every local user.
    console.log(
      "Start runners with this join token in a file (mode 600) or the environment, not as an argument\n" +
        "(every local user can read a process's arguments):\n" +
        "  runner --workers N --join-file FILE\n" +
        "  VICO_JOIN=... runner --workers N\n" +
        `Join token (a credential, like a password):\n  ${written.token}`,
    );
    log.info("The join token is also in {path} (runner --join-file); it is a credential, keep it private", {
      path: written.path,
    });
  } else if (local === 0) {
    log.info("Start runners with: runner --manager {host}:{port} --workers N", { host: hostname, port: bound });
  }

  // Progress from the live counts: a bar on a terminal, else a log line now and then.
  const counts = () => manager.status.counts();
  const showProgress = !flags["no-progress"] && !flags.quiet;
  const progress = showProgress && Deno.stderr.isTerminal() ? new ProgressBar(counts) : undefined;
  const progressLog = showProgress && progress === undefined ? new ProgressLog(counts) : undefined;

  // First SIGINT/SIGTERM: no new jobs, wait for running ones; second: now.
  // Unsettled jobs run on the next start on the same results directory.
  let stoppedBy: Deno.Signal | undefined;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const handler = () => {
      if (stoppedBy === undefined) {
        stoppedBy = sig;
        log.warn(
          "{sig}: stopping (send it again to stop at once); unsettled jobs will run when started again on {dir}",
          {
            sig,
            dir: resultsDir,
          },
        );
        manager.stop();
      } else {
        log.warn("{sig} again: stopping now", { sig });
        manager.close();
      }
    };
    Deno.addSignalListener(sig, handler);
    return [sig, handler] as const;
  });
  const summary = await manager.finished;
  for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
  progress?.stop();
  progressLog?.stop();
  await statusServer?.finish();
  await statusServer?.close();
  console.log(formatSummary(summary).trimEnd());
  if (summary.stopped) return 128 + (stoppedBy === "SIGINT" ? 2 : 15);
  return summary.failed === 0 ? ExitCode.OK : ExitCode.FAILED;
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

/** The `host:port` a join token names. */
function advertiseAddress(flag: string | undefined, hostname: string, port: number): string {
  if (flag !== undefined) return /:[0-9]+$/.test(flag) && !flag.endsWith("]") ? flag : `${flag}:${port}`;
  const host = isWildcard(hostname) ? Deno.hostname() : hostname;
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `dir/jobs.txt` → `dir/jobs.results`; standard input → `vico-results`. */
export function defaultResultsDir(jobsPath: string): string {
  if (jobsPath === "-") return "vico-results";
  const base = basename(jobsPath, extname(jobsPath)) || basename(jobsPath);
  return join(dirname(jobsPath), `${base}.results`);
}
